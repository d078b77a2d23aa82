"""The agent runtime's constants: where the model policy lives in an instance's config, and the
bounds of chat and conversations (the agent keeps the same ones: instances/agent.py)."""

POLICY_CONFIG_KEY = "model_policy"
CHAT_MAX_CHARS = 8000
CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9:_-]{1,128}$"
MAX_TOKENS_PER_DAY = 10**12
CONVERSATIONS_LIMIT_MAX = 100
