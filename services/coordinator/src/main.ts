// The coordinator process: `node --import tsx services/coordinator/src/main.ts --help`.
import { runService } from "@ballast/runtime";
import { coordinatorDefinition } from "./coordinator.ts";

process.exit(await runService(coordinatorDefinition));
