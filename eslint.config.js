// Type-aware lint for the whole package (run by `npm test`).
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", ".runtime/", "var/", "bench/results/", ".scratch/", "eslint.config.js", ".dependency-cruiser.mjs"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-restricted-imports": ["error", { paths: [{ name: "node:child_process", importNames: ["exec", "execSync"], message: "argv arrays only: use core/run.ts" }] }],
    },
  },
  {
    files: ["**/*.test.ts", "test/**/*.ts", "bench/**/*.ts"],
    rules: {
      "@typescript-eslint/no-floating-promises": "off",
      "@typescript-eslint/no-non-null-assertion": "off",
    },
  },
);
