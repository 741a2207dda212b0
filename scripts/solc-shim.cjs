#!/usr/bin/env node
// A stand-in for a native `solc` binary, backed by the npm `solc` package
// (soljson.js), so that py-solc-x compiles with exactly the compiler Hardhat uses
// and nothing is ever downloaded.
//
//   solc-shim.cjs --version
//   solc-shim.cjs --standard-json [--base-path DIR] [--include-path DIR]... < input.json
//
// Imports are resolved from the project's node_modules, then the project root
// (then --base-path and --include-path directories, when given), the way Hardhat
// resolves them. Other flags py-solc-x may pass (--allow-paths, --output-dir,
// --overwrite) are accepted and ignored: output always goes to stdout.
'use strict';

const fs = require('fs');
const path = require('path');

const PROJECT_ROOT = path.resolve(__dirname, '..');
const FLAGS_WITH_VALUE = new Set(['--base-path', '--include-path', '--allow-paths', '--output-dir']);
const FLAGS_WITHOUT_VALUE = new Set(['--version', '--standard-json', '--overwrite']);

function parseArgs(argv) {
  const args = { version: false, standardJson: false, roots: [] };
  for (let i = 0; i < argv.length; i++) {
    let [flag, value] = argv[i].split(/=(.*)/s, 2);
    if (FLAGS_WITH_VALUE.has(flag)) {
      if (value === undefined) value = argv[++i];
      if (value === undefined) fail(`option '${flag}' needs a value`);
      if (flag === '--base-path' || flag === '--include-path') args.roots.push(path.resolve(value));
    } else if (FLAGS_WITHOUT_VALUE.has(flag) && value === undefined) {
      if (flag === '--version') args.version = true;
      if (flag === '--standard-json') args.standardJson = true;
    } else if (flag !== '-') {
      // py-solc-x recognises solc's own wording for an unknown flag.
      fail(`unrecognised option '${argv[i]}'`);
    }
  }
  return args;
}

function fail(message) {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

// An import path (a source unit name) maps to a file under one of the roots;
// one that climbs out of its root with '..' is refused.
function findImports(roots) {
  return (unitName) => {
    for (const root of roots) {
      const file = path.resolve(root, unitName);
      if (!file.startsWith(root + path.sep)) continue;
      try {
        return { contents: fs.readFileSync(file, 'utf8') };
      } catch (err) {
        if (err.code !== 'ENOENT' && err.code !== 'EISDIR') return { error: `${unitName}: ${err.message}` };
      }
    }
    return { error: `File not found: ${unitName} (looked in ${roots.join(', ')})` };
  };
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const solc = require(require.resolve('solc', { paths: [PROJECT_ROOT] }));
  if (args.version) {
    process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return;
  }
  if (!args.standardJson) fail('only --version and --standard-json are supported');
  const input = fs.readFileSync(0, 'utf8');
  const roots = [path.join(PROJECT_ROOT, 'node_modules'), PROJECT_ROOT, ...args.roots];
  process.stdout.write(solc.compile(input, { import: findImports(roots) }));
  process.stdout.write('\n');
}

main();
