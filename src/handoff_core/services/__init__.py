"""The use cases: plain async methods of (command, dependencies), one unit of work each."""
