// duplex: one binary, subcommands.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"duplex - real-time messaging: an RFC 6455 WebSocket server and client"};
  app.set_version_flag("--version", std::string("duplex ") + DUPLEX_VERSION);
  app.require_subcommand(1);
  auto run_echo = duplex::cli::add_echo_command(app);
  auto run_connect = duplex::cli::add_connect_command(app);
  auto run_bench = duplex::cli::add_bench_command(app);
  auto run_token = duplex::cli::add_token_command(app);
  auto run_serve = duplex::cli::add_serve_command(app);
  // `duplex serve --version` as well as `duplex --version`.
  for (auto* sub : app.get_subcommands({})) sub->set_version_flag("--version", std::string("duplex ") + DUPLEX_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (app.got_subcommand("echo")) return run_echo();
    if (app.got_subcommand("connect")) return run_connect();
    if (app.got_subcommand("bench")) return run_bench();
    if (app.got_subcommand("token")) return run_token();
    if (app.got_subcommand("serve")) return run_serve();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "duplex: %s\n", e.what());
    return 1;
  }
  return 1;
}
