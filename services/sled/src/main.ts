// The sled process: `node --import tsx services/sled/src/main.ts --help`.
import { runService } from "@ballast/runtime";
import { sledDefinition } from "./sled.ts";

process.exit(await runService(sledDefinition));
