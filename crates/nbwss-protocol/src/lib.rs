//! NBWSS wire model: messages, notification records, WebSocket server host objects, nbwss.properties.
