#!/usr/bin/env node
// The `ballast` command. Ballast runs its TypeScript sources through tsx, so this
// launcher registers the loader and hands over to the CLI's entry module.
import { register } from "tsx/esm/api";

register();
await import("../src/main.ts");
