//! System tests: emulator, service and endpoint together over real sockets.
