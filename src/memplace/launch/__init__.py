"""Starting a program under the preload runtime: what the program is, where the runtime is, the child process."""
