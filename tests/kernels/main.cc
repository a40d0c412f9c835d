// Runs the kernel test groups named on the command line (all of them without arguments) and
// prints one line per group: `GROUP: N checks, F failed`. Exit code: the number of failures
// (capped at 100). The group `_harness` must fail: it proves that a failed check is reported.
#include <algorithm>
#include <cstdio>
#include <string>

#include "check.h"

KT_GROUP(_harness) {
  KT_CHECK(1 + 1 == 3, "a check that must fail");
  KT_CLOSE(1.0, 1.1, 1e-3, 0.0, "a comparison that must fail");
}

int main(int argc, char** argv) {
  std::vector<std::string> names;
  for (int k = 1; k < argc; ++k) names.push_back(argv[k]);
  if (names.empty())
    for (const auto& g : kt::registry())
      if (g.name[0] != '_') names.push_back(g.name);
  int total = 0;
  for (const auto& name : names) {
    const kt::Group* group = nullptr;
    for (const auto& g : kt::registry())
      if (name == g.name) group = &g;
    if (!group) {
      std::printf("unknown group %s\n", name.c_str());
      return 100;
    }
    kt::failures() = 0;
    kt::checks() = 0;
    group->run();
    std::printf("%s: %ld checks, %d failed\n", name.c_str(), kt::checks(), kt::failures());
    total += kt::failures();
  }
  return std::min(total, 100);
}
