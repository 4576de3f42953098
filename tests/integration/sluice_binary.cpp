#include "sluice_binary.hpp"

const char* sluice::testing::sluice_binary() { return SLUICE_BINARY_PATH; }
