// Everything a WebSocket server or client needs.
#pragma once
#include "duplex/net/client.hpp"
#include "duplex/net/connection.hpp"
#include "duplex/net/event_loop.hpp"
#include "duplex/net/handlers.hpp"
#include "duplex/net/loop_timer.hpp"
#include "duplex/net/options.hpp"
#include "duplex/net/prepared_message.hpp"
#include "duplex/net/server.hpp"
#include "duplex/protocol/close_code.hpp"
#include "duplex/protocol/http_response.hpp"
#include "duplex/protocol/opcode.hpp"

