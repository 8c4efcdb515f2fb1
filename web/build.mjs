// Copies the pinned third-party assets of the browser page into the Python package, with their licenses.
// Run after `npm ci` (package-lock.json pins every version): `node build.mjs`. The copies are committed, so
// `pip install` needs no npm; rerunning this after a version bump refreshes them and versions.json.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const OUT = "../src/cora/inference/server/static/vendor";
const FILES = {
  three: ["build/three.module.min.js", "build/three.core.min.js", "LICENSE"],
  "@photo-sphere-viewer/core": ["index.module.js", "index.css", "LICENSE"],
  "@photo-sphere-viewer/markers-plugin": ["index.module.js", "index.css", "LICENSE"],
  "swagger-ui-dist": ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"],
};
const versions = {};
for (const [pkg, files] of Object.entries(FILES)) {
  const source = join("node_modules", pkg);
  const meta = JSON.parse(readFileSync(join(source, "package.json"), "utf8"));
  versions[pkg] = { version: meta.version, license: meta.license };
  for (const file of files) {
    const target = join(OUT, pkg.replace("@photo-sphere-viewer/", "psv-"), file.replace("build/", ""));
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(join(source, file), target);
  }
}
writeFileSync(join(OUT, "versions.json"), JSON.stringify(versions, null, 2) + "\n");
console.log(versions);
