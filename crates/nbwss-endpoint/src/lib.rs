//! A ready-to-run NBWSS cloud endpoint: tokens, an app API to call NetBackup, a notification feed, a dashboard.
