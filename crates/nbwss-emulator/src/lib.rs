//! An emulated NetBackup primary server REST API for development and tests.
