// The duplex command's subcommands.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace duplex::cli {

// Each registers its options on `app` and returns the function that runs it
// (returning the process exit status).
std::function<int()> add_echo_command(CLI::App& app);
std::function<int()> add_connect_command(CLI::App& app);
std::function<int()> add_bench_command(CLI::App& app);
std::function<int()> add_token_command(CLI::App& app);
std::function<int()> add_serve_command(CLI::App& app);

// "host:port" or "[v6]:port" -> host, port. False with a message on error.
bool split_host_port(const std::string& text, std::string& host, std::uint16_t& port, std::string& error);

}  // namespace duplex::cli
