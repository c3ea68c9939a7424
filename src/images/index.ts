/** Images: sharp-based output presets, processing and thumbnails, and input validation. */
export * from "./errors";
export * from "./presets";
export * from "./process";
export * from "./validate";
