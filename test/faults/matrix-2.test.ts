// Part 2 of the fault matrix (matrix-suite.ts says what it checks; plan.ts
// matrixPart which points are in this part).
import { matrixSuite } from "./matrix-suite.ts";

matrixSuite(2);
