// libFuzzer target: the WebSocket protocol state machine in the server role
// (input: what a client sends, masked frames).
// The body, its input layout and its invariants are in frames_fuzzer.inc.
#include "duplex/protocol/opcode.hpp"

constexpr duplex::protocol::Role kRole = duplex::protocol::Role::server;
constexpr duplex::protocol::Role kPeerRole = duplex::protocol::Role::client;

#include "frames_fuzzer.inc"
