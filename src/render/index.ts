/** The card rendering library: templates, the render worker pool and avatar resolution. */
export { type AvatarResolverOptions, createAvatarResolver } from "./avatar";
export { ENGINES, type EngineName } from "./engine";
export { CardDataError, RenderError, type RenderErrorCode, UnknownTemplateError } from "./errors";
export { RenderPool, type RenderPoolOptions, type RenderPoolStats } from "./pool";
export {
  type CardRenderer,
  type CardRendererOptions,
  createCardRenderer,
  type PngEncoder,
  type RenderedCard,
  renderCard,
} from "./render";
export {
  type CardTemplate,
  getTemplate,
  type ImageResolver,
  isTemplateName,
  listTemplates,
  parseCardData,
  prepareCardData,
  type TemplateInfo,
  type TemplateName,
  templateNames,
  templates,
} from "./templates";
