/* A shared library with its own TLS block (static TLS when linked at start-up). */
__thread long lib_counter = 5;
__thread char lib_pad[3] = {1, 2, 3};
void lib_set(long v) { lib_counter = v; }
