//! System tests of nbwss: the emulator, the service and the endpoint started together in one process,
//! talking over real sockets on loopback. The tests live in `tests/it/`; this library is empty.
