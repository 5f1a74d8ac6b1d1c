// The door between the engine's callers and its io thread (Redis and NATS
// engines). Every operation is posted to the io_context through the gate,
// under its lock; stop() closes the gate under the same lock and only then
// posts its shutdown task. One thread runs the io_context, in post order, so
// every operation the gate let in runs before the shutdown, and the shutdown
// fails whatever it left pending: no accepted operation is ever dropped.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>

#include <asio/io_context.hpp>
#include <asio/post.hpp>

namespace duplex::engines::detail {

class OperationGate {
 public:
  enum class Admission : std::uint8_t { accepted, stopped };

  explicit OperationGate(asio::io_context& io) : io_(io) {}

  // Posts `run(done)`. Refused (closed): nothing is posted, `done` is left to
  // the caller, who answers it with the refusal. `run` runs on the io thread
  // and must make `done` run exactly once (it may run it at once).
  template <class Result, class Run>
  Admission submit(std::function<void(Result)>& done, Run&& run) {
    std::lock_guard lock(mutex_);
    if (closed_) return Admission::stopped;
    asio::post(io_, [run = std::forward<Run>(run), done = std::move(done)]() mutable { run(std::move(done)); });
    return Admission::accepted;
  }

  // Posts `task` (an operation without a completion). False once closed.
  template <class Task>
  bool post(Task&& task) {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    asio::post(io_, std::forward<Task>(task));
    return true;
  }

  // Lets nothing in from now on. True for the call that closed it: every
  // operation let in was posted before it returns.
  bool close() {
    std::lock_guard lock(mutex_);
    return !std::exchange(closed_, true);
  }

  bool closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
  }

 private:
  asio::io_context& io_;
  mutable std::mutex mutex_;
  bool closed_ = false;
};

}  // namespace duplex::engines::detail
