#include "trace/pcapng.h"

#include <cerrno>
#include <cstring>

namespace flowscope::trace {

namespace {

void put32(std::string& b, uint32_t v) { b.append(reinterpret_cast<const char*>(&v), 4); }
void put16(std::string& b, uint16_t v) { b.append(reinterpret_cast<const char*>(&v), 2); }
void pad4(std::string& b) {
  while (b.size() % 4) b.push_back('\0');
}
// Option: code, length, value padded to 32 bits.
void option(std::string& b, uint16_t code, const std::string& value) {
  put16(b, code);
  put16(b, static_cast<uint16_t>(value.size()));
  b += value;
  pad4(b);
}
void end_of_options(std::string& b) { put32(b, 0); }

// Block: type, total length, body, total length (host byte order; the SHB's
// byte-order magic tells readers which).
std::string block(uint32_t type, const std::string& body) {
  std::string b;
  const uint32_t total = static_cast<uint32_t>(12 + body.size());
  put32(b, type);
  put32(b, total);
  b += body;
  put32(b, total);
  return b;
}

}  // namespace

Result<PcapngWriter> PcapngWriter::open(const std::string& path, uint32_t snaplen) {
  PcapngWriter w;
  w.path_ = path;
  w.f_.reset(fopen(path.c_str(), "wb"));
  if (!w.f_) return fail_errno(errno, "cannot write {}: {}", path, std::strerror(errno));

  std::string shb;
  put32(shb, 0x1A2B3C4D);  // byte-order magic
  put16(shb, 1);           // major
  put16(shb, 0);           // minor
  put32(shb, 0xffffffff);  // section length: unknown (-1 as 64 bits)
  put32(shb, 0xffffffff);
  option(shb, 4, "flowscope trace");  // shb_userappl
  end_of_options(shb);
  if (auto r = w.put(block(0x0A0D0D0A, shb)); !r) return std::unexpected(r.error());

  std::string idb;
  put16(idb, 101);  // LINKTYPE_RAW
  put16(idb, 0);
  put32(idb, snaplen);
  option(idb, 2, "flowscope");              // if_name
  option(idb, 9, std::string(1, '\x09'));  // if_tsresol: 10^-9 s
  end_of_options(idb);
  if (auto r = w.put(block(1, idb)); !r) return std::unexpected(r.error());
  return w;
}

Result<void> PcapngWriter::write(uint64_t ts_ns, const uint8_t* data, uint32_t caplen, uint32_t origlen,
                                 const std::string& comment) {
  std::string epb;
  put32(epb, 0);  // interface id
  put32(epb, static_cast<uint32_t>(ts_ns >> 32));
  put32(epb, static_cast<uint32_t>(ts_ns));
  put32(epb, caplen);
  put32(epb, origlen < caplen ? caplen : origlen);
  epb.append(reinterpret_cast<const char*>(data), caplen);
  pad4(epb);
  if (!comment.empty()) {
    option(epb, 1, comment.substr(0, 60000));  // opt_comment
    end_of_options(epb);
  }
  if (auto r = put(block(6, epb)); !r) return r;
  packets_++;
  return {};
}

Result<void> PcapngWriter::put(const std::string& b) {
  if (fwrite(b.data(), 1, b.size(), f_.get()) != b.size()) return fail_errno(errno, "writing {} failed: {}", path_, std::strerror(errno));
  return {};
}

Result<void> PcapngWriter::flush() {
  if (fflush(f_.get()) != 0) return fail_errno(errno, "writing {} failed: {}", path_, std::strerror(errno));
  return {};
}

}  // namespace flowscope::trace
