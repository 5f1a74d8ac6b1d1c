// Every test of net_tests and of the hub's test programs ends with no
// connection alive that it made: a connection that outlives its server,
// client and loops is a leak (a reference cycle, or a ring request that never
// completed). The check fails the test that left it, by name; LeakSanitizer
// reports it only at exit, for a whole shard, and only under ASan.
#include <gtest/gtest.h>

#include <chrono>

#include "duplex/net/connection.hpp"
#include "eventually.hpp"

namespace {

class ConnectionLeakCheck : public testing::EmptyTestEventListener {
  // Runs before the printer's OnTestEnd (end events go to the listeners in
  // reverse order), so the failure shows on the test's own line.
  void OnTestStart(const testing::TestInfo&) override { before_ = duplex::net::Connection::alive(); }
  void OnTestEnd(const testing::TestInfo& test) override {
    // A reference dropped on another thread destroys its connection a moment
    // later, on its loop: allow for it. Compared with the count at the start,
    // so that one leak fails one test.
    if (test_support::eventually([&] { return duplex::net::Connection::alive() <= before_; }, std::chrono::seconds(2)))
      return;
    ADD_FAILURE() << duplex::net::Connection::alive() - before_ << " connection(s) still alive after "
                  << test.test_suite_name() << "." << test.name()
                  << ": nothing should hold them once its loops are gone";
  }
  std::size_t before_ = 0;
};

// Added when the tests start, after InitGoogleTest has installed its
// printer (brief or not): the check's OnTestEnd must come first.
class InstallLeakCheck : public testing::Environment {
  void SetUp() override { testing::UnitTest::GetInstance()->listeners().Append(new ConnectionLeakCheck); }
};

testing::Environment* const installed = testing::AddGlobalTestEnvironment(new InstallLeakCheck);

}  // namespace
