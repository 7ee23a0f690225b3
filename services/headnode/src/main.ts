// The head node process: `node --import tsx services/headnode/src/main.ts --help`.
import { runService } from "@ballast/runtime";
import { headnodeDefinition } from "./headnode-service.ts";

process.exit(await runService(headnodeDefinition));
