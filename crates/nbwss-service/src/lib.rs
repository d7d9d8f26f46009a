//! The NBWSS service: connects a NetBackup primary server to cloud WebSocket endpoints.
