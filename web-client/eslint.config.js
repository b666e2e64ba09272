// ESLint for the browser client (src/ and vite.config.ts): typescript-eslint's type-aware
// recommended rules, which catch unsafe `any`s and floating or misused promises, and no stylistic
// rule (the code's own style, no semicolons and a space before a function's parentheses, stays).
// The browser tests in tests/ are plain JavaScript run by Node, checked by running them.
import { URL, fileURLToPath } from 'node:url'
import js from '@eslint/js'
import { defineConfig, globalIgnores } from 'eslint/config'
import tseslint from 'typescript-eslint'

export default defineConfig(
  globalIgnores(['dist/', 'dev-dist/', 'node_modules/', 'tests/', 'test-output/', 'public/']),
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
