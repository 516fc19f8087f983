// Builds the two pages of the evidence timeline into the service's package, where Flask
// serves them under /timeline/ (relative asset paths, so any mount point works). The
// output is committed: the service runs without Node; tests check it matches the sources.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const page = (name) => fileURLToPath(new URL(name, import.meta.url));

export default defineConfig({
  base: "./",
  build: {
    outDir: fileURLToPath(new URL("../service/timeline/static", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    sourcemap: false,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 1200,
    rollupOptions: {
      input: { index: page("index.html"), launch: page("launch.html") },
    },
  },
});
