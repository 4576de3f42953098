#pragma once
// The path of the sluice binary the process tests run. It is compiled into
// one small file (sluice_binary.cpp), not given to every test source: an
// absolute path on each file's command line would make every integration
// test a ccache miss in any other checkout.
namespace sluice::testing {
const char* sluice_binary();
}  // namespace sluice::testing

#define SLUICE_BINARY (::sluice::testing::sluice_binary())
