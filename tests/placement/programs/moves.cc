// C++ allocations (through operator new in libstdc++) and a realloc that moves a block
// between devices: content must survive.
#include <cstring>
#include <vector>
extern "C" {
#include "where.h"
}

int main()
{
    std::vector<double> *grid = new std::vector<double>(1 << 17, 1.5);   // SITE grid
    char *block = static_cast<char *>(malloc(1 << 20));                  // SITE block
    for (int i = 0; i < (1 << 20); i++) block[i] = static_cast<char>(i * 7);
    describe("grid", grid->data());
    describe("block", block);
    block = static_cast<char *>(realloc(block, 3 << 20));                // SITE grow
    int intact = 1;
    for (int i = 0; i < (1 << 20); i++) intact &= block[i] == static_cast<char>(i * 7);
    describe("grown", block);
    printf("intact=%d\n", intact);
    free(block);
    delete grid;
    return intact ? 0 : 1;
}
