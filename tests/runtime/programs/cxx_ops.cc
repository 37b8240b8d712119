// C++ allocation through every operator form: plain, array, sized, aligned, nothrow; and
// allocation failure: nothrow returns null, the new-handler runs, bad_alloc is thrown.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <new>
#include <string>
#include <vector>
#include <map>

struct alignas(256) Wide { char bytes[300]; };

int main()
{
    int failures = 0;
    for (int round = 0; round < 1000; round++) {
        int *one = new int(round);
        int *many = new int[round + 1];
        Wide *w = new Wide;
        Wide *ws = new Wide[3];
        if ((uintptr_t)w % 256 || (uintptr_t)ws % 256) failures++;
        int *nt = new (std::nothrow) int[10];
        void *raw = ::operator new(100, std::align_val_t(4096));
        if ((uintptr_t)raw % 4096) failures++;
        ::operator delete(raw, 100, std::align_val_t(4096));     // sized + aligned
        void *nta = ::operator new(64, std::align_val_t(128), std::nothrow);
        ::operator delete(nta, std::align_val_t(128), std::nothrow);
        delete[] nt;
        delete[] ws;
        delete w;
        delete[] many;
        ::operator delete(one, sizeof(int));                     // sized
    }
    std::vector<std::string> words;
    std::map<int, std::vector<double>> m;
    for (int i = 0; i < 20000; i++) {
        words.push_back(std::to_string(i) + std::string(i % 50, 'x'));
        m[i % 997].push_back(i);
    }
    auto shared = std::make_shared<std::vector<int>>(1000, 7);
    volatile size_t too_many = SIZE_MAX / 64;
    int *huge = new (std::nothrow) int[too_many];               // must fail, not crash
    if (huge) failures++;
    bool threw = false;
    try { volatile size_t n = SIZE_MAX / 2; char *volatile c = new char[n]; delete[] c; }
    catch (const std::bad_alloc &) { threw = true; }
    if (!threw) failures++;
    // the new-handler runs on each failure until it gives up; then bad_alloc
    static int handler_calls;
    std::set_new_handler([] { if (++handler_calls == 3) std::set_new_handler(nullptr); });
    threw = false;
    try { volatile size_t n = SIZE_MAX / 4; char *volatile c = new char[n]; delete[] c; }
    catch (const std::bad_alloc &) { threw = true; }
    if (!threw || handler_calls != 3) failures++;
    std::printf("words=%zu keys=%zu shared=%d failures=%d\n", words.size(), m.size(), (*shared)[999], failures);
    return failures != 0;
}
