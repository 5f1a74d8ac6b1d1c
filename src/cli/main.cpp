// duplex: one binary, subcommands.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"

namespace {

// CLI11's usage line lists positionals only; a required option belongs there
// too ("Usage: duplex bench idle [OPTIONS] url --server-pid PID"), so that the
// line says what the command refuses to run without.
class UsageFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App* app, std::string name) const override {
    std::string usage = CLI::Formatter::make_usage(app, std::move(name));
    std::string required;
    for (const CLI::Option* opt : app->get_options([](const CLI::Option* o) { return o->nonpositional() && o->get_required(); })) {
      required += " " + opt->get_name();
      if (opt->get_type_size() != 0 && !opt->get_type_name().empty()) required += " " + opt->get_type_name();
    }
    if (required.empty()) return usage;
    const auto end = usage.find_last_not_of('\n') + 1;
    return usage.substr(0, end) + required + usage.substr(end);
  }
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"duplex - real-time messaging: an RFC 6455 WebSocket server and client"};
  // Before the subcommands are added: each copies its parent's formatter.
  app.formatter(std::make_shared<UsageFormatter>());
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
    // --help and --version exit 0; every usage error exits 2, like the
    // commands' own checks (CLI11's codes 101..115 would be restarted by the
    // systemd unit, which stops only after exit 2).
    return app.exit(e) == 0 ? 0 : 2;
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
