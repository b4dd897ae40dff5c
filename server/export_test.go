package server

// TaskFeedPoll is how often a task stream reads its feed without a
// doorbell, for the tests of package server_test.
const TaskFeedPoll = taskFeedPoll
