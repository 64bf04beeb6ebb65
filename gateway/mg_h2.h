#ifndef MG_H2_H
#define MG_H2_H
#endif
