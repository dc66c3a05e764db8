// afd: the command-line front door. Like git, `afd <command> args...` runs the program
// `afd-<command>` that sits next to this binary, so each command lives with the code it
// exercises (attention_node, gateway, ...) and the layering stays one-way.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <dirent.h>

#include <algorithm>

namespace {

std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = '\0';
  std::string path(buf);
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::vector<std::string> Commands(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind("afd-", 0) == 0 && access((dir + "/" + name).c_str(), X_OK) == 0) {
      out.push_back(name.substr(4));
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

int Help(const std::string& dir) {
  std::printf("usage: afd <command> [args...]\n\ncommands:\n");
  for (const std::string& c : Commands(dir)) std::printf("  %s\n", c.c_str());
  std::printf("\n`afd <command> --help` describes each command.\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = SelfDir();
  if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") ||
      !std::strcmp(argv[1], "-h")) {
    return Help(dir);
  }
  const std::string program = dir + "/afd-" + argv[1];
  if (access(program.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "afd: unknown command '%s' (no %s); try `afd help`\n", argv[1],
                 program.c_str());
    return 2;
  }
  std::vector<char*> args;
  args.push_back(const_cast<char*>(program.c_str()));
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  execv(program.c_str(), args.data());
  std::perror(("afd: cannot run " + program).c_str());
  return 127;
}
