build/release/obj/src/base/rand.o: src/base/rand.c src/base/rand.h \
 src/base/err.h src/base/log.h
src/base/rand.h:
src/base/err.h:
src/base/log.h:
