#include "duplex/net/prepared_message.hpp"

#include "duplex/protocol/frame.hpp"

namespace duplex::net {

PreparedMessage::PreparedMessage(protocol::Opcode kind, std::string_view payload,
                                 const protocol::DeflateTuning* deflate_tuning, int window_bits)
    : window_bits_(window_bits), kind_(kind) {
  protocol::append_frame(frame_, kind, payload);
  header_size_ = frame_.size() - payload.size();
  if (deflate_tuning && payload.size() >= deflate_tuning->min_size) {
    // Compressed once, without context, so any connection that negotiated
    // server_no_context_takeover with a window at least this large can take it.
    protocol::DeflateParams params;
    params.server_no_context_takeover = true;
    params.server_max_window_bits = static_cast<std::uint8_t>(window_bits);
    protocol::PerMessageDeflate deflate(params, /*is_server=*/true, *deflate_tuning);
    std::string body;
    if (deflate.compress(payload, body)) protocol::append_frame(compressed_, kind, body, protocol::FrameFlags{true, true});
  }
}

std::string_view PreparedMessage::payload() const { return std::string_view(frame_).substr(header_size_); }

}  // namespace duplex::net
