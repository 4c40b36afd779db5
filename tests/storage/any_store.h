// The FlowStore contract, run on every backend: the same tests, the same
// expected answers. SQLite always (storage_test); ClickHouse on a server the
// test binary starts (clickhouse_store_test).
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "storage/flow_store.h"
#include "store_test_util.h"

namespace fstest_storage {

class AnyStore : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  // The test's store; opened again on the same data by each call.
  std::unique_ptr<FlowStore> open();
  // Inserts and waits until the rows can be read.
  static bool insert(FlowStore& s, std::vector<FlowRow>& rows);

  TempDb tmp_;
  std::string database_;  // ClickHouse: this test's own database
};

}  // namespace fstest_storage
