// The import check (`npm run lint`, so `npm test`): the layering of src/
// (docs/architecture.md), no import circle, no production import of src/lab/.
// A folder may import its own files and any folder in a lower layer; never a
// folder in its own layer (peers share only what lies below them) nor above.
// Tests (*.test.ts), test support (testing.ts, testdata/) are not production:
// they may import anything.
const LAYERS = [
  ["core"],
  ["model"],
  ["qmp", "host", "scheduler", "migration"],
  ["qemu", "store", "wire"],
  ["agent", "controller"],
  ["api"],
  ["cli", "lab"],
];
/** Imports the layering allows although the two folders share a layer. */
const ALLOWED_PEERS = { cli: ["lab"] };
const NOT_PRODUCTION = "(\\.test\\.ts$|/testing\\.ts$|/testdata/)";

const layerOf = (folder) => LAYERS.findIndex((l) => l.includes(folder));
const layerRules = LAYERS.flat().map((folder) => {
  const above = LAYERS.flat().filter((other) => other !== folder && layerOf(other) >= layerOf(folder) && !(ALLOWED_PEERS[folder] ?? []).includes(other));
  return {
    name: `layer-${folder}`,
    comment: `src/${folder}/ (layer ${layerOf(folder)}) may import only lower layers: not ${above.join(", ")}`,
    severity: "error",
    from: { path: `^src/${folder}/`, pathNot: NOT_PRODUCTION },
    to: { path: `^src/(${above.join("|")})/` },
  };
}).filter((r) => !r.to.path.includes("()"));

/** @type {import('dependency-cruiser').IConfiguration} */
export default {
  forbidden: [
    {
      name: "no-circular",
      comment: "no import circle (production code)",
      severity: "error",
      from: { pathNot: NOT_PRODUCTION },
      to: { circular: true, viaOnly: { pathNot: NOT_PRODUCTION } },
    },
    {
      name: "no-lab-in-production",
      comment: "src/lab/ (the one-machine lab) is imported only by lab/, cli/, tests and bench",
      severity: "error",
      from: { path: "^src/", pathNot: `^src/(lab|cli)/|${NOT_PRODUCTION}` },
      to: { path: "^src/lab/" },
    },
    {
      name: "no-unknown-folder",
      comment: "every folder of src/ has a layer (add a new one to LAYERS)",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^src/", pathNot: `^src/(${LAYERS.flat().join("|")})/` },
    },
    {
      name: "api-not-agent",
      comment: "the controller's API shares with the agent only the HTTP kit (core/http/) and the contracts (wire/)",
      severity: "error",
      from: { path: "^src/api/", pathNot: NOT_PRODUCTION },
      to: { path: "^src/agent/" },
    },
    ...layerRules,
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js", ".json"] },
  },
};
