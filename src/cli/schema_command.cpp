// `flowscope schema`: every flow field with its names in JSON lines, the API
// and storage, its IPFIX element and NetFlow v9 equivalent (the table in
// docs/schema.md is this output).
#include <cstdio>

#include "cli/commands.h"
#include "flow/fields.h"

namespace flowscope::cli {

Command add_schema_command(CLI::App& app, const GlobalOptions&) {
  auto* cmd = app.add_subcommand("schema", "Print the flow schema (every field and its names) as a Markdown table");
  return {cmd, [] {
            const std::string md = schema::schema_markdown();
            std::fwrite(md.data(), 1, md.size(), stdout);
            return 0;
          }};
}

}  // namespace flowscope::cli
