// libFuzzer target: the wire format of the Redis and NATS engines
// (src/engines/redis_wire.hpp), read from Redis pub/sub, NATS subjects and
// history lists — other processes' bytes, so parsed as hostile.
//
// Whatever the bytes, every decoder returns without crashing, and whatever
// decodes re-encodes to bytes that decode to the same value (round trip).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "../src/engines/redis_wire.hpp"

using namespace duplex::engines;

namespace {

void check(bool ok, const char* what, std::string_view text) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_redis_wire invariant violated: %s\n%.*s\n", what, static_cast<int>(text.size()),
                 text.data());
    std::abort();
  }
}

bool same(const Publication& a, const Publication& b) {
  return a.offset == b.offset && a.time_ms == b.time_ms && a.publisher == b.publisher && a.data == b.data;
}
bool same(const ClientInfo& a, const ClientInfo& b) { return a.client == b.client && a.user == b.user && a.info == b.info; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(bytes), size);

  if (auto entry = redis_wire::decode_entry(in)) {
    auto again = redis_wire::decode_entry(redis_wire::encode_entry(*entry));
    check(again && same(*again, *entry), "entry round trip", in);
  }
  if (auto client = redis_wire::decode_client(in)) {
    auto again = redis_wire::decode_client(redis_wire::encode_client(*client));
    check(again && same(*again, *client), "client round trip", in);
  }
  if (auto message = redis_wire::decode_message(in)) {
    if (message->kind == ChannelEvent::Kind::publication) {
      check(message->publication != nullptr, "publication without a body", in);
      auto again = redis_wire::decode_message(redis_wire::encode_publication(message->epoch, *message->publication));
      check(again && again->kind == message->kind && again->epoch == message->epoch && again->publication &&
                same(*again->publication, *message->publication),
            "publication round trip", in);
    } else {
      const bool join = message->kind == ChannelEvent::Kind::join;
      auto again = redis_wire::decode_message(join ? redis_wire::encode_join(message->client)
                                                   : redis_wire::encode_leave(message->client));
      check(again && again->kind == message->kind && same(again->client, message->client), "join/leave round trip", in);
    }
  }
  if (auto node = redis_wire::decode_node(in)) {
    auto again = redis_wire::decode_node(redis_wire::encode_node(*node));
    check(again && again->name == node->name && again->started_ms == node->started_ms &&
              again->updated_ms == node->updated_ms && again->connections == node->connections &&
              again->pushes_out == node->pushes_out,
          "node round trip", in);
  }
  return 0;
}
