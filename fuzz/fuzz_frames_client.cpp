// libFuzzer target: the WebSocket protocol state machine in the client role
// (input: what a server sends, unmasked frames).
// The body, its input layout and its invariants are in frames_fuzzer.inc.
#include "duplex/protocol/opcode.hpp"

constexpr duplex::protocol::Role kRole = duplex::protocol::Role::client;
constexpr duplex::protocol::Role kPeerRole = duplex::protocol::Role::server;

#include "frames_fuzzer.inc"
