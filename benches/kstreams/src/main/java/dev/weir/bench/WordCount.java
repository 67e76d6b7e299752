package dev.weir.bench;

import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * Weir's word-count example in Kafka Streams, for the end-to-end bench: split each
 * record's value into words, keep a count per word in a RocksDB store of the input
 * partition's task (no repartition, as Weir counts per input partition), and emit every
 * word with its running count as text. Exactly-once v2, the commit interval given.
 *
 * <p>Usage: {@code WordCount BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR THREADS
 * COMMIT_INTERVAL_MS}. Runs until SIGTERM.
 */
public final class WordCount {
    private static final String STORE = "counts";

    /** Counts the words of each record, in the task's own store. */
    static final class Count implements Processor<byte[], String, String, String> {
        private ProcessorContext<String, String> context;
        private KeyValueStore<String, Long> counts;

        @Override
        public void init(ProcessorContext<String, String> context) {
            this.context = context;
            this.counts = context.getStateStore(STORE);
        }

        @Override
        public void process(Record<byte[], String> record) {
            String text = record.value();
            if (text == null) {
                return;
            }
            int start = -1;
            for (int i = 0; i <= text.length(); i++) {
                boolean word = i < text.length()
                        && (Character.isLetterOrDigit(text.charAt(i)) || text.charAt(i) == '\'');
                if (word && start < 0) {
                    start = i;
                } else if (!word && start >= 0) {
                    String w = text.substring(start, i).toLowerCase(Locale.ROOT);
                    Long previous = counts.get(w);
                    long n = previous == null ? 1 : previous + 1;
                    counts.put(w, n);
                    context.forward(new Record<>(w, Long.toString(n), record.timestamp()));
                    start = -1;
                }
            }
        }
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 7) {
            System.err.println("usage: WordCount BOOTSTRAP APPLICATION_ID INPUT OUTPUT STATE_DIR THREADS COMMIT_INTERVAL_MS");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args[4]);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(args[5]));
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Integer.parseInt(args[6]));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put("consumer.auto.offset.reset", "earliest");

        Topology topology = new Topology();
        topology.addSource("input", Serdes.ByteArray().deserializer(),
                Serdes.String().deserializer(), args[2]);
        topology.addProcessor("count", Count::new, "input");
        topology.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(STORE), Serdes.String(), Serdes.Long()), "count");
        topology.addSink("output", args[3], Serdes.String().serializer(),
                Serdes.String().serializer(), "count");

        KafkaStreams streams = new KafkaStreams(topology, props);
        Failures.report(streams);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            stopped.countDown();
        }));
        streams.start();
        System.out.println("started " + args[1]);
        System.out.flush();
        stopped.await();
    }
}
