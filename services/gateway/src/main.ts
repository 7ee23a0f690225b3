// The gateway process: `node --import tsx services/gateway/src/main.ts --help`.
import { runService } from "@ballast/runtime";
import { gatewayDefinition } from "./gateway.ts";

process.exit(await runService(gatewayDefinition));
