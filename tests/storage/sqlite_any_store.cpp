// AnyStore on SQLite.
#include "any_store.h"
#include "storage/sqlite_store.h"

namespace fstest_storage {

void AnyStore::SetUp() {}

std::unique_ptr<FlowStore> AnyStore::open() {
  auto s = SqliteStore::open({.path = tmp_.path()});
  EXPECT_TRUE(s) << (s ? "" : s.error().message);
  return s ? std::move(*s) : nullptr;
}

bool AnyStore::insert(FlowStore& s, std::vector<FlowRow>& rows) {
  auto r = s.insert(rows);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r.has_value();
}

INSTANTIATE_TEST_SUITE_P(SQLite, AnyStore, ::testing::Values("sqlite"));

}  // namespace fstest_storage
