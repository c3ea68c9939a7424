/**
 * What images/ throws. It speaks no HTTP: the caller that takes the image from a user (the generate service)
 * turns these into its own client errors, keeping the code, message and details.
 */
export class ImageError extends Error {
  override name = "ImageError";
  readonly code: string;
  readonly details?: unknown;

  constructor(code: string, message: string, details?: unknown) {
    super(message);
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

export type ImageInputErrorCode =
  | "image_too_large"
  | "image_too_many_pixels"
  | "unsupported_image_format"
  | "invalid_image"
  | "mask_size_mismatch"
  | "invalid_base64";

/** A user-supplied image (edit input or mask) that is refused, with a stable code. */
export class ImageInputError extends ImageError {
  override name = "ImageInputError";
  declare readonly code: ImageInputErrorCode;

  constructor(code: ImageInputErrorCode, message: string, details?: unknown) {
    super(code, message, details);
  }
}

/** An output preset that names nothing known or does not validate. */
export class PresetError extends ImageError {
  override name = "PresetError";
  declare readonly code: "unknown_preset" | "invalid_preset";

  constructor(code: "unknown_preset" | "invalid_preset", message: string, details?: unknown) {
    super(code, message, details);
  }
}
