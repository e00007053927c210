let varCounter = 0;
/** A tf.variable name unique in this process (tfjs refuses duplicate variable names). */
export function uniqueVarName(prefix: string): string {
  return `${prefix}#${++varCounter}`;
}
