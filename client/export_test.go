package client

// RecvMax is recvMax, for the test that ties it to ledgerd's send bound.
const RecvMax = recvMax
