// ESLint for the TypeScript model (ts/): typescript-eslint's type-aware recommended rules, which
// catch unsafe `any`s and misused promises, and no stylistic rule (formatting is not a lint error).
// The Node tests and the fixture script are plain JavaScript checked by running them.
import { URL, fileURLToPath } from 'node:url'
import js from '@eslint/js'
import { defineConfig, globalIgnores } from 'eslint/config'
import tseslint from 'typescript-eslint'

export default defineConfig(
  globalIgnores(['build/', 'node_modules/', 'test/', 'fixtures/', 'target/']),
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    rules: {
      // Yjs's declarations leave out YText.toString, which returns the text: the rule would take
      // every `ytext.toString()` for '[object Object]'.
      '@typescript-eslint/no-base-to-string': ['error', { ignoredTypeNames: ['Error', 'RegExp', 'URL', 'URLSearchParams', 'YText'] }],
    },
    languageOptions: {
      parserOptions: {
        projectService: true,
        // import.meta.dirname needs Node 20.11; package.json allows 20.10.
        tsconfigRootDir: fileURLToPath(new URL('.', import.meta.url)),
      },
    },
  },
)
