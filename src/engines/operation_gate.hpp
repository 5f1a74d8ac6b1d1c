// The door between the engine's callers and its io thread (Redis and NATS
// engines). Every operation is posted to the io_context through the gate,
// under its lock; stop() closes the gate under the same lock and only then
// posts its shutdown task. One thread runs the io_context, in post order, so
// every operation the gate let in runs before the shutdown, and the shutdown
// fails whatever it left pending: no accepted operation is ever dropped.
//
// Operations with a completion (publish, history, presence, node_subscribe,
// nodes) are counted from the moment they are let in until their completion
// runs; with `max_in_flight` of them in flight the next is refused instead of
// queued, so a stalled Redis cannot grow the queue without bound.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>

#include <asio/io_context.hpp>
#include <asio/post.hpp>

namespace duplex::engines::detail {

class OperationGate {
 public:
  enum class Admission : std::uint8_t { accepted, stopped, overloaded };

  OperationGate(asio::io_context& io, std::size_t max_in_flight) : io_(io), max_in_flight_(max_in_flight) {}

  // Posts `run(completion)` and counts it in flight until `completion` (which
  // then calls `done`) runs. Refused (closed, or max_in_flight in flight
  // unless `Limit::exempt`): nothing is posted, `done` is left to the caller,
  // who answers it with the refusal. `run` runs on the io thread and must
  // make `completion` run exactly once (it may run it at once).
  enum class Limit : std::uint8_t { applies, exempt };
  template <class Result, class Run>
  Admission submit(std::function<void(Result)>& done, Run&& run, Limit limit = Limit::applies) {
    std::lock_guard lock(mutex_);
    if (closed_) return Admission::stopped;
    if (limit == Limit::applies && in_flight_.load(std::memory_order_relaxed) >= max_in_flight_) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return Admission::overloaded;
    }
    in_flight_.fetch_add(1, std::memory_order_relaxed);
    std::function<void(Result)> completion = [this, done = std::move(done)](Result result) {
      in_flight_.fetch_sub(1, std::memory_order_relaxed);
      if (done) done(std::move(result));
    };
    asio::post(io_, [run = std::forward<Run>(run), completion = std::move(completion)]() mutable {
      run(std::move(completion));
    });
    return Admission::accepted;
  }

  // Posts `task` (an operation without a completion: presence changes,
  // heartbeats, unsubscribes; not counted, never refused while open: each
  // follows a counted operation or is periodic). False once closed.
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
  // Any thread: operations let in whose completion has not run yet.
  std::size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }
  // Any thread: operations refused because max_in_flight were in flight.
  std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  // Why an operation was refused, for its error message.
  std::string refusal(Admission admission, const std::string& engine) const {
    if (admission == Admission::overloaded)
      return engine + " engine overloaded: " + std::to_string(max_in_flight_) +
             " operations in flight (engine.max_in_flight)";
    return engine + " engine stopped";
  }

 private:
  asio::io_context& io_;
  const std::size_t max_in_flight_;
  mutable std::mutex mutex_;
  bool closed_ = false;
  std::atomic<std::size_t> in_flight_{0};
  std::atomic<std::uint64_t> refused_{0};
};

}  // namespace duplex::engines::detail
