// A child process for tests: started with argv, stdout/stderr captured to
// files, killed on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace fstest {

class Process {
 public:
  explicit Process(std::vector<std::string> argv);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Waits until stdout or stderr contains `needle`; false on timeout or exit.
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout, bool in_stderr = true) const;
  void signal(int sig) const;
  // Waits for exit; returns the exit status (128+N for a signal, -1 on timeout).
  int wait(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  bool running();
  std::string out() const;
  std::string err() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string out_path_, err_path_;
};

std::string read_file(const std::string& path);

}  // namespace fstest
