// Hardhat 2 build of contracts/, used to cross-check scripts/compile.py (tests/test_build.py).
// The compiler is the npm `solc` package's soljson.js, the same one scripts/solc-shim.cjs
// runs: Hardhat never downloads a compiler. Settings must match SETTINGS in scripts/compile.py.
const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const SOLC_VERSION = "0.8.28";

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async ({ solcVersion }) => {
  const solc = require("solc");
  // solc.version() is e.g. "0.8.28+commit.7893614a.Emscripten.clang".
  const longVersion = solc.version().replace(/\.Emscripten\.clang$/, "");
  if (!longVersion.startsWith(`${solcVersion}+`)) {
    throw new Error(`solc ${solcVersion} requested, but node_modules/solc is ${longVersion}`);
  }
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: solcVersion,
    longVersion,
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "paris",
    },
  },
};
