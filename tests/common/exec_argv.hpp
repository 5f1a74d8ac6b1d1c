// An argv for execv/execvp, built before fork(). Between fork() and exec in
// a multithreaded test process only async-signal-safe calls are allowed:
// another thread may have held the allocator's lock (ASan's, or glibc's
// arena) at the fork, so a malloc in the child can hang it forever before
// it execs, and the test then waits for a server that never starts.
#pragma once
#include <string>
#include <vector>

namespace duplex::test {

class ExecArgv {
 public:
  explicit ExecArgv(std::vector<std::string> args) : args_(std::move(args)) {
    pointers_.reserve(args_.size() + 1);
    for (auto& arg : args_) pointers_.push_back(arg.data());
    pointers_.push_back(nullptr);
  }
  ExecArgv(const ExecArgv&) = delete;
  ExecArgv& operator=(const ExecArgv&) = delete;

  // argv[0] and the null-terminated array: both safe to use in the child.
  const char* file() const { return pointers_.front(); }
  char* const* argv() const { return pointers_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> pointers_;
};

}  // namespace duplex::test
