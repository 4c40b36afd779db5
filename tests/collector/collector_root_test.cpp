#include <gtest/gtest.h>
TEST(CollectorRoot, Placeholder) {}
